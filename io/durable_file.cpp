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

namespace {
void publish_or_throw(const std::string& tmp, const std::string& target) {
    fsync_path(tmp, false);
    if (::link(tmp.c_str(), target.c_str()) == 0) {
        ::unlink(tmp.c_str());
    } else {
        const int err = errno;
        CC_REQUIRE(err != EEXIST, "refusing to overwrite existing file ", target, " (it appeared while writing)");
        CC_REQUIRE(err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EXDEV || err == EMLINK,
                   "cannot link ", tmp, " to ", target, ": ", std::strerror(err));
        struct stat st {};
        CC_REQUIRE(::lstat(target.c_str(), &st) != 0, "refusing to overwrite existing file ", target);
        CC_REQUIRE(std::rename(tmp.c_str(), target.c_str()) == 0, "cannot rename ", tmp, " to ", target, ": ",
                   std::strerror(errno));
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
                   std::strerror(errno));
    }
}

}  // namespace curaclip::io
