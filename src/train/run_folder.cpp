#include "train/run_folder.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/check.h"
#include "io/durable_file.h"

namespace fs = std::filesystem;

namespace curaclip {

bool holds_run(const std::string& dir) {
    return fs::exists(fs::path(dir) / "config.ini") || fs::exists(fs::path(dir) / "latest") ||
           fs::exists(fs::path(dir) / "metrics.jsonl");
}

int64_t finished_step(const std::string& dir) {
    std::ifstream f(fs::path(dir) / kFinishedMarker);
    std::string word;
    long long step = -1;
    if (f && f >> word >> step && word == "step" && step >= 0) return step;
    return f.is_open() ? 0 : -1;  // a marker without a readable step still marks the run finished
}

void mark_finished(const std::string& dir, int64_t step, const std::string& checkpoint_file) {
    io::write_text_file((fs::path(dir) / kFinishedMarker).string(),
                        "step " + std::to_string(step) + "\ncheckpoint " + checkpoint_file + "\n", /*replace=*/true);
}

void clear_finished(const std::string& dir) {
    std::error_code ec;
    fs::remove(fs::path(dir) / kFinishedMarker, ec);
    CC_REQUIRE(!ec, "cannot remove ", (fs::path(dir) / kFinishedMarker).string(), " (", ec.message(), ")");
}

bool metrics_has_eval(const std::string& dir, int64_t step) {
    // The form the trainer writes: {"step": N, "eval": true, ...} (train/metrics_log.h).
    std::ifstream f(fs::path(dir) / "metrics.jsonl");
    const std::string head = "{\"step\": " + std::to_string(step) + ", \"eval\": true";
    for (std::string line; std::getline(f, line);)
        if (line.rfind(head, 0) == 0) return true;
    return false;
}

std::string probe_run_folder(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return "train.out " + dir + ": cannot create the run folder (" + ec.message() + ")";
    if (!fs::is_directory(dir, ec)) return "train.out " + dir + " exists and is not a folder";
    const std::string probe = (fs::path(dir) / (".write_probe_" + std::to_string(::getpid()))).string();
    const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return "train.out " + dir + " is not writable (" + std::strerror(errno) +
               "): checkpoints and metrics could not be saved; choose another train.out";
    const char byte = 0;
    const bool ok = ::write(fd, &byte, 1) == 1 && ::fsync(fd) == 0;
    const int err = errno;
    ::close(fd);
    ::unlink(probe.c_str());
    if (!ok)
        return "train.out " + dir + ": writing a probe file failed (" + std::strerror(err) +
               "): checkpoints could not be saved; choose another train.out";
    return "";
}

std::string fresh_name(const std::string& dir, const std::string& base, const std::string& ext) {
    for (int i = 1;; ++i) {
        std::string name = base;
        if (i > 1) {
            name += '_';
            name += std::to_string(i);
        }
        name += ext;
        if (!fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
    }
}

void agree_on_error(const Communicator& comm, const std::string& root_error) {
    int64_t n = comm.rank() == 0 ? int64_t(root_error.size()) : 0;
    if (comm.size() > 1) comm.broadcast(&n, 1, 0);
    if (n == 0) return;
    std::vector<uint8_t> text(root_error.begin(), root_error.end());
    text.resize(size_t(n));
    if (comm.size() > 1) comm.broadcast(text.data(), text.size(), 0);
    CC_USER_FAIL(std::string(text.begin(), text.end()));
}

}  // namespace curaclip
