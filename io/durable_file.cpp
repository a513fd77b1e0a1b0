#include "io/durable_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/check.h"

namespace curaclip::io {

void fsync_path(const std::string& path, bool directory) {
    const int fd = ::open(path.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    CC_CHECK(fd >= 0, "cannot open ", path, " to sync it: ", std::strerror(errno));
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    CC_CHECK(rc == 0 || directory, "fsync of ", path, " failed: ", std::strerror(err));
}

std::string parent_dir(const std::string& path) {
    const size_t slash = path.find_last_of('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

void replace_durably(const std::string& tmp, const std::string& target) {
    fsync_path(tmp, false);
    CC_CHECK(std::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", target, ": ",
             std::strerror(errno));
    fsync_path(parent_dir(target), true);
}

void publish_new_file(const std::string& tmp, const std::string& target) {
    fsync_path(tmp, false);
    if (::link(tmp.c_str(), target.c_str()) == 0) {
        ::unlink(tmp.c_str());
    } else {
        const int err = errno;
        CC_CHECK(err != EEXIST, "refusing to overwrite existing file ", target, " (it appeared while writing)");
        CC_CHECK(err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EXDEV || err == EMLINK,
                 "cannot link ", tmp, " to ", target, ": ", std::strerror(err));
        struct stat st {};
        CC_CHECK(::lstat(target.c_str(), &st) != 0, "refusing to overwrite existing file ", target);
        CC_CHECK(std::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", target, ": ",
                 std::strerror(errno));
    }
    fsync_path(parent_dir(target), true);
}

}  // namespace curaclip::io
