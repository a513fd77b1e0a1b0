#include "io/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace curaclip::io {

std::string describe_errno(int err) {
    std::string s = std::strerror(err);
    if (err == ENOSPC) s += " (disk full)";
    if (err == EDQUOT) s += " (disk quota full)";
    return s;
}

void fsync_path(const std::string& path, bool directory) {
    const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC));
    CC_REQUIRE(fd >= 0, "cannot open ", path, " to sync it: ", describe_errno(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    CC_REQUIRE(rc == 0 || directory, "fsync of ", path, " failed: ", describe_errno(err));
}

std::string parent_dir(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

namespace {
// An unnamed file in `path`'s directory (O_TMPFILE, Linux >= 3.11 on ext4, xfs,
// btrfs, tmpfs): it gets its name only when every byte is written and synced, so a
// process killed while writing (kill -9, a rank lost under mpirun, OOM) leaves
// nothing behind, not even a partial temporary. -1 where the file system has no
// O_TMPFILE (NFS, Lustre, overlayfs on old kernels) or /proc is not mounted (the
// name is given through /proc/self/fd); the caller then writes under the name.
int open_unnamed(const std::string& path) {
#ifdef O_TMPFILE
    if (::access("/proc/self/fd", X_OK) != 0) return -1;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) return -1;  // the named path reports EEXIST as before
    return ::open(parent_dir(path).c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#else
    (void)path;
    return -1;
#endif
}
}  // namespace

void write_new_file(const std::string& path, const void* data, size_t size) {
    int fd = open_unnamed(path);
    const bool unnamed = fd >= 0;
    if (!unnamed) fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CC_REQUIRE(fd >= 0, "cannot create ", path, ": ", describe_errno(errno));
    int err = 0;
    const char* step = "";
    // Reserve the space first: a disk that is too small fails here, before a byte is
    // written. File systems without fallocate(2) (EOPNOTSUPP, ENOSYS; EINVAL on some
    // FUSE ones) are simply written; their full disk shows in write or fsync below.
    if (size > 0 && ::fallocate(fd, 0, 0, off_t(size)) != 0 && errno != EOPNOTSUPP && errno != ENOSYS &&
        errno != EINVAL) {
        err = errno;
        step = "reserving the space";
    }
    const char* p = static_cast<const char*>(data);
    size_t left = err ? 0 : size;
    while (left > 0) {
        const ssize_t n = ::write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {  // write(2) returning 0 for a non-zero count does not happen on regular files
            err = n < 0 ? errno : EIO;
            step = "writing";
            break;
        }
        p += n;
        left -= size_t(n);
    }
    if (!err && ::fsync(fd) != 0) {
        err = errno;
        step = "fsync";
    }
    if (!err && unnamed) {
        // The complete, synced file gets its name; linkat fails (EEXIST) rather than replace.
        const std::string self = "/proc/self/fd/" + std::to_string(fd);
        if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0) {
            err = errno;
            step = "naming the written file";
        }
    }
    if (::close(fd) != 0 && !err) {  // NFS reports a full disk at close
        err = errno;
        step = "close";
    }
    if (err) {
        if (!unnamed || std::strcmp(step, "close") == 0) ::unlink(path.c_str());
        CC_USER_FAIL("cannot write ", path, " (", size, " bytes; ", step, " failed): ", describe_errno(err));
    }
}

void write_text_file(const std::string& path, const std::string& text, bool replace) {
    const std::string tmp = path + ".tmp";
    ::unlink(tmp.c_str());  // a leftover of a killed writer (the unnamed write leaves none)
    write_new_file(tmp, text.data(), text.size());
    try {
        if (replace) replace_durably(tmp, path);
        else publish_new_file(tmp, path);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

void replace_durably(const std::string& tmp, const std::string& target) {
    fsync_path(tmp, false);
    CC_REQUIRE(std::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", target, ": ",
               describe_errno(errno));
    fsync_path(parent_dir(target), true);
}

namespace {
void publish_or_throw(const std::string& tmp, const std::string& target) {
    fsync_path(tmp, false);
    if (::link(tmp.c_str(), target.c_str()) == 0) {
        ::unlink(tmp.c_str());
    } else {
        const int err = errno;
        CC_REQUIRE(err != EEXIST, "refusing to overwrite existing file ", target, " (it appeared while writing)");
        CC_REQUIRE(err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EXDEV || err == EMLINK,
                   "cannot link ", tmp, " to ", target, ": ", describe_errno(err));
        struct stat st {};
        CC_REQUIRE(::lstat(target.c_str(), &st) != 0, "refusing to overwrite existing file ", target);
        CC_REQUIRE(std::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", target, ": ",
                   describe_errno(errno));
    }
    fsync_path(parent_dir(target), true);
}
}  // namespace

void publish_new_file(const std::string& tmp, const std::string& target) {
    try {
        publish_or_throw(tmp, target);
    } catch (...) {
        ::unlink(tmp.c_str());
        throw;
    }
}

void make_directories(const std::string& dir, const std::string& what) {
    size_t pos = 0;
    while (pos != std::string::npos) {
        pos = dir.find('/', pos + 1);
        const std::string cur = dir.substr(0, pos);
        if (cur.empty()) continue;
        struct stat st {};
        if (::stat(cur.c_str(), &st) == 0) {
            CC_REQUIRE(S_ISDIR(st.st_mode), what, ": ", cur, " exists and is not a directory");
            continue;
        }
        CC_REQUIRE(::mkdir(cur.c_str(), 0777) == 0 || errno == EEXIST, what, ": cannot create directory ", cur, ": ",
                   describe_errno(errno));
    }
}

}  // namespace curaclip::io
