#include "train/preemption.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>
#include <mutex>
#include <condition_variable>
#include <thread>
#include <algorithm>

#include "mpi/communicator.h"
#include "mpi/launcher_env.h"

namespace curaclip {

namespace {

// ---- state shared with the handler -------------------------------------------------
// Plain sig_atomic_t for flags the handler sets; lock-free atomics where several
// threads' handlers may race (a signal goes to any thread: OpenMP workers, the loader).
volatile std::sig_atomic_t g_requested = 0;
volatile std::sig_atomic_t g_signal = 0;
std::atomic<int> g_interrupts{0};
std::atomic<bool> g_observed{false};
std::atomic<bool> g_installed{false};
std::atomic<bool> g_prepared{false};
std::atomic<bool> g_armed{false};
std::atomic<bool> g_reporting{false};  // one report per process, by the first handler that needs it
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free);

constexpr int kStopSignals[] = {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP};
constexpr int kMaxLocal = 1024;  // ranks per node we watch; beyond that, peers count as unknown

// Everything the report needs, fixed before arming; the handler only reads it.
struct Report {
    std::string prefix;         // "curaclip train: "
    std::string launcher_name;  // "mpirun", "orted", "slurmstepd"
    pid_t launcher_pid = 0;     // 0: not started by a launcher (a singleton): no teardown semantics
    std::string run_dir;        // absolute; "" when train.out is unknown
    std::string latest_path;    // run_dir + "/latest" ("" for train-experts or unknown)
    bool experts = false;
    std::string resume, restart;
    int my_world_rank = 0;
    int n_local = 0;            // 0: peers not watched (not visible from here)
    int my_local = -1;          // my index among them
    int local_rank[kMaxLocal] = {};
    pid_t local_pid[kMaxLocal] = {};
    // One state per node rank (kSlot*), in memory the node's ranks share (an unlinked
    // POSIX shared-memory object): who is training, and who is failing on its own
    // (its error printed, MPI_Abort called: alive until the launcher kills it).
    volatile std::sig_atomic_t* slots = nullptr;
};
constexpr std::sig_atomic_t kSlotIdle = 0, kSlotTraining = 1, kSlotFailed = 2;
Report g_report;

// ---- async-signal-safe output ------------------------------------------------------
// A fixed buffer (static: the report is written once per process, guarded by
// g_reporting) and write(2); no allocation, no stdio.
struct SafeOut {
    char buf[16384];
    size_t n = 0;
    void s(const char* t) {
        for (; t && *t && n + 1 < sizeof buf; ++t) buf[n++] = *t;
    }
    void i(long v) {
        char d[24];
        int k = 0;
        const bool neg = v < 0;
        unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do { d[k++] = char('0' + u % 10); u /= 10; } while (u && k < 23);
        if (neg) s("-");
        while (k > 0 && n + 1 < sizeof buf) buf[n++] = d[--k];
    }
    void flush() {
        size_t off = 0;
        while (off < n) {
            const ssize_t w = ::write(STDERR_FILENO, buf + off, n - off);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) break;
            off += size_t(w);
        }
        n = 0;
    }
};
SafeOut g_out;

const char* signal_cname(int sig) {
    switch (sig) {
        case SIGUSR1: return "SIGUSR1";
        case SIGUSR2: return "SIGUSR2";
        case SIGTERM: return "SIGTERM";
        case SIGINT: return "SIGINT";
        case SIGHUP: return "SIGHUP";
        case SIGCONT: return "SIGCONT";
        case SIGKILL: return "SIGKILL";
        default: return nullptr;
    }
}

// Gone: no such process, or a zombie its parent has not reaped yet (/proc/PID/stat
// holds "pid (comm) S ...": the state follows the last ')').
bool process_gone(pid_t pid) {
    if (::kill(pid, 0) != 0) return errno == ESRCH;
    char path[40] = "/proc/";
    size_t n = 6;
    char digits[16];
    int k = 0;
    for (long v = pid; v > 0 && k < 15; v /= 10) digits[k++] = char('0' + v % 10);
    while (k > 0) path[n++] = digits[--k];
    for (const char* t = "/stat"; *t; ++t) path[n++] = *t;
    path[n] = '\0';
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[512];
    ssize_t len;
    do len = ::read(fd, buf, sizeof buf); while (len < 0 && errno == EINTR);
    ::close(fd);
    ssize_t close_paren = -1;
    for (ssize_t i = 0; i < len; ++i)
        if (buf[i] == ')') close_paren = i;
    return close_paren >= 0 && close_paren + 2 < len && (buf[close_paren + 2] == 'Z' || buf[close_paren + 2] == 'X');
}

std::sig_atomic_t slot_of(int k) { return g_report.slots ? g_report.slots[k] : kSlotTraining; }
void set_my_slot(std::sig_atomic_t v) {
    if (g_report.slots && g_report.my_local >= 0) g_report.slots[g_report.my_local] = v;
}

// The run's last checkpoint as `latest` names it now, then the command to go on.
void append_checkpoint_lines(SafeOut& o) {
    const Report& r = g_report;
    if (r.experts) {
        o.s(r.prefix.c_str()); o.s("checkpoints: "); o.s(r.run_dir.c_str());
        o.s("/expert_<c>/latest (finished experts are skipped on resume)\n");
        o.s(r.prefix.c_str()); o.s("resume with: "); o.s(r.resume.c_str()); o.s("\n");
        return;
    }
    if (r.latest_path.empty()) {
        o.s(r.prefix.c_str()); o.s("resume with: "); o.s(r.resume.c_str()); o.s("\n");
        return;
    }
    char name[256];
    ssize_t len = -1;
    const int fd = ::open(r.latest_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        do len = ::read(fd, name, sizeof name - 1); while (len < 0 && errno == EINTR);
        ::close(fd);
    }
    size_t k = 0;  // up to the first line end, NUL or unprintable byte
    while (len > 0 && k < size_t(len) && name[k] >= 0x20 && name[k] < 0x7f) ++k;
    name[k] = '\0';
    if (k == 0) {
        o.s(r.prefix.c_str()); o.s("no checkpoint written yet (no "); o.s(r.latest_path.c_str());
        o.s("); start again with: "); o.s(r.restart.c_str()); o.s("\n");
        return;
    }
    char path[PATH_MAX + 256];
    size_t p = 0;
    for (const char* t = r.run_dir.c_str(); *t && p + 1 < sizeof path; ++t) path[p++] = *t;
    if (p + 1 < sizeof path) path[p++] = '/';
    for (const char* t = name; *t && p + 1 < sizeof path; ++t) path[p++] = *t;
    path[p] = '\0';
    o.s(r.prefix.c_str()); o.s("last checkpoint: "); o.s(path);
    o.s(::access(path, R_OK) == 0 ? " (named by latest)\n" : " (named by latest, but missing!)\n");
    o.s(r.prefix.c_str()); o.s("resume with: "); o.s(r.resume.c_str()); o.s("\n");
}

// A signal from the launcher: is a rank of this node gone, or failing on its own?
// Reports it (the lowest surviving rank of the node that is training writes) and
// ends this process; otherwise, for SIGTERM, reports that the launcher is ending the
// job and returns (the stop flag is set: the ranks try to checkpoint).
void on_launcher_signal(int sig) {
    const Report& r = g_report;
    int lost = -1;
    pid_t lost_pid = 0;
    bool lost_failed = false;
    bool lower_reporter = false;
    for (int k = 0; k < r.n_local; ++k) {
        if (k == r.my_local) continue;
        const bool gone = process_gone(r.local_pid[k]);
        const std::sig_atomic_t state = slot_of(k);
        if (gone || state == kSlotFailed) {
            if (lost < 0) { lost = r.local_rank[k]; lost_pid = r.local_pid[k]; lost_failed = !gone; }
        } else if (r.local_rank[k] < r.my_world_rank && state == kSlotTraining) {
            lower_reporter = true;
        }
    }
    if (lost < 0 && sig != SIGTERM) return;  // SIGCONT with everyone here: job control, not a teardown
    bool expected = false;
    if (!g_reporting.compare_exchange_strong(expected, true)) {
        if (lost >= 0) ::_exit(1);  // another thread is writing the report and will exit
        return;
    }
    if (!lower_reporter) {
        SafeOut& o = g_out;
        o.s(r.prefix.c_str());
        if (lost >= 0) {
            o.s("rank "); o.i(lost); o.s(" (pid "); o.i(lost_pid);
            o.s(lost_failed ? ") failed (its error is above); " : ") has ended; ");
            o.s(r.launcher_name.c_str()); o.s(" (pid "); o.i(r.launcher_pid); o.s(") is ending the job\n");
        } else {
            o.s(r.launcher_name.c_str()); o.s(" (pid "); o.i(r.launcher_pid); o.s(") sent SIGTERM: it is ending the job "
                "(it was signalled itself, or a rank on another node ended); stopping after this step if it leaves "
                "the time\n");
        }
        append_checkpoint_lines(o);
        o.flush();
    }
    // The job cannot go on without the lost rank: exit now rather than wait in a
    // collective for the launcher's SIGKILL.
    if (lost >= 0) ::_exit(1);
}

extern "C" void on_signal(int sig, siginfo_t* info, void*) {
    const int saved_errno = errno;
    const bool from_launcher = g_report.launcher_pid > 0 && info && info->si_code == SI_USER &&
                               info->si_pid == g_report.launcher_pid;
    const bool armed = g_armed.load();
    if (sig == SIGCONT) {
        if (armed && from_launcher) on_launcher_signal(sig);
        errno = saved_errno;
        return;
    }
    if (g_signal == 0) g_signal = sig;
    g_requested = 1;
    if (sig == SIGINT && !from_launcher && g_interrupts.fetch_add(1) >= 1) {
        bool expected = false;
        if (g_reporting.compare_exchange_strong(expected, true)) {
            SafeOut& o = g_out;
            o.s(armed ? g_report.prefix.c_str() : "curaclip: ");
            o.s("second SIGINT: exiting now, without a checkpoint\n");
            if (armed) append_checkpoint_lines(o);
            o.flush();
        }
        ::_exit(128 + SIGINT);
    }
    if (armed && from_launcher && sig == SIGTERM) on_launcher_signal(sig);
    errno = saved_errno;
}

bool shell_safe(const std::string& s) {
    if (s.empty()) return false;
    for (const char c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("_./=:,+@%-", c))) return false;
    return true;
}

std::string shell_quote(const std::string& s) {
    if (shell_safe(s)) return s;
    std::string q = "'";
    for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
}

std::string current_dir() {
    std::error_code ec;
    const std::filesystem::path p = std::filesystem::current_path(ec);
    return ec ? std::string(".") : p.string();
}

// The launcher prefix for a command line rebuilt from argv.
std::string launcher_prefix(int world_size) {
    if (const char* l = std::getenv("CURACLIP_LAUNCHER"); l && *l) return std::string(l) + " ";
    const std::string kind = read_launch_environment().launcher;
    if (kind == "slurm") return "srun -n " + std::to_string(world_size) + " ";
    if (kind != "none" || world_size > 1) return "mpirun -n " + std::to_string(world_size) + " ";
    return "";
}

// argv (from the binary on) without --train.resume, then `extra`.
std::string command_line(int argc, char** argv, int world_size, const std::string& extra, bool drop_overwrite) {
    std::string cmd = launcher_prefix(world_size);
    for (int k = 0; k < argc; ++k) {
        const std::string a = argv[k];
        if (k >= 2 && a == "--train.resume") { ++k; continue; }
        if (k >= 2 && a.rfind("--train.resume=", 0) == 0) continue;
        if (drop_overwrite && k >= 2 && a == "--train.overwrite") { ++k; continue; }
        if (drop_overwrite && k >= 2 && a.rfind("--train.overwrite=", 0) == 0) continue;
        cmd += shell_quote(a);
        cmd += ' ';
    }
    return cmd + extra;
}


// The node's state slots: node rank 0 creates a POSIX shared-memory object, the
// others map it, and it is unlinked at once, so nothing is left behind whatever
// happens to the job. nullptr (states unknown) where that fails anywhere.
volatile std::sig_atomic_t* share_slots(const Communicator& node) {
    const size_t bytes = sizeof(std::sig_atomic_t) * size_t(node.size());
    char name[64] = {};
    int fd = -1;
    if (node.rank() == 0) {
        const long long stamp = std::chrono::steady_clock::now().time_since_epoch().count();
        std::snprintf(name, sizeof name, "/curaclip-%d-%llx", int(::getpid()), stamp);
        fd = ::shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 || ::ftruncate(fd, off_t(bytes)) != 0) {
            if (fd >= 0) { ::close(fd); ::shm_unlink(name); fd = -1; }
            name[0] = '\0';
        }
    }
    node.broadcast(reinterpret_cast<uint8_t*>(name), sizeof name, 0);
    if (node.rank() != 0 && name[0]) fd = ::shm_open(name, O_RDWR | O_CLOEXEC, 0600);
    void* p = fd >= 0 ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (fd >= 0) ::close(fd);
    int64_t ok = p != MAP_FAILED ? 1 : 0;
    node.allreduce_min(&ok, 1);  // every rank mapped it (and the name may go)
    if (node.rank() == 0 && name[0]) ::shm_unlink(name);
    if (!ok) {
        if (p != MAP_FAILED) ::munmap(p, bytes);
        return nullptr;
    }
    return static_cast<volatile std::sig_atomic_t*>(p);
}
}  // namespace

void install_preemption_handlers() {
    if (!g_installed.exchange(true)) {
        struct sigaction sa {};
        sa.sa_sigaction = on_signal;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        for (int s : kStopSignals) sigaddset(&sa.sa_mask, s);  // one handler at a time per thread
        sigaddset(&sa.sa_mask, SIGCONT);
        for (int s : kStopSignals) {
            // SIGHUP and SIGINT ignored from the start stay ignored: that is what
            // `nohup` and a shell's background jobs ask for.
            struct sigaction old {};
            if ((s == SIGHUP || s == SIGINT) && sigaction(s, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
            sigaction(s, &sa, nullptr);
        }
        sigaction(SIGCONT, &sa, nullptr);
    }
    if (g_prepared.load()) {
        set_my_slot(kSlotTraining);
        g_armed.store(true);
    }
}

bool preemption_requested() {
    const bool r = g_requested != 0;
    if (r) g_observed.store(true);
    return r;
}

void clear_preemption_request() {
    g_requested = 0;
    g_signal = 0;
    g_interrupts.store(0);
    g_observed.store(false);
    g_armed.store(false);
}

bool preemption_observed() { return g_observed.load(); }
int preemption_signal() { return g_signal; }

std::string signal_name(int sig) {
    const char* n = signal_cname(sig);
    return n ? std::string(n) : "signal " + std::to_string(sig);
}

std::string resume_command(int argc, char** argv, int world_size) {
    const std::string cd = "cd " + shell_quote(current_dir()) + " && ";
    if (const char* c = std::getenv("CURACLIP_RESUME_CMD"); c && *c) return cd + c;
    return cd + command_line(argc, argv, world_size, "--train.resume latest", false);
}

void prepare_failure_report(const Communicator& world, int argc, char** argv, const std::string& command,
                            const std::string& run_dir, bool experts) {
    // The node's ranks and their process ids (collective: every rank takes part).
    const Communicator node = world.split_shared();
    const int64_t mine[2] = {world.rank(), int64_t(::getpid())};
    std::vector<int64_t> all(size_t(node.size()) * 2);
    node.allgather(mine, all.data(), 2);

    g_armed.store(false);
    Report& r = g_report;
    r.prefix = "curaclip " + command + ": ";
    r.experts = experts;
    r.run_dir.clear();
    r.latest_path.clear();
    if (!run_dir.empty()) {
        std::error_code ec;
        const std::filesystem::path abs = std::filesystem::absolute(run_dir, ec);
        r.run_dir = ec ? run_dir : abs.lexically_normal().string();
        while (r.run_dir.size() > 1 && r.run_dir.back() == '/') r.run_dir.pop_back();
        if (!experts) r.latest_path = r.run_dir + "/latest";
    }
    const std::string cd = "cd " + shell_quote(current_dir()) + " && ";
    r.resume = resume_command(argc, argv, world.size());
    r.restart = cd + command_line(argc, argv, world.size(), "--train.overwrite true", true);
    r.my_world_rank = world.rank();
    r.launcher_pid = 0;
    r.launcher_name = "the launcher";
    if (read_launch_environment().launcher != "none") {
        r.launcher_pid = ::getppid();
        std::ifstream comm("/proc/" + std::to_string(r.launcher_pid) + "/comm");
        std::string name;
        if (comm && std::getline(comm, name) && !name.empty()) r.launcher_name = name;
    }
    // Peers are watched only where every one of them is visible from here (not in
    // another pid namespace, e.g. one container per rank), so that "gone" is true.
    r.n_local = 0;
    r.my_local = node.rank();
    bool visible = node.size() <= kMaxLocal;
    for (int k = 0; visible && k < node.size(); ++k) {
        const pid_t pid = pid_t(all[size_t(2 * k + 1)]);
        if (::kill(pid, 0) != 0 && errno != EPERM) visible = false;
    }
    if (visible) {
        for (int k = 0; k < node.size(); ++k) {
            r.local_rank[k] = int(all[size_t(2 * k)]);
            r.local_pid[k] = pid_t(all[size_t(2 * k + 1)]);
        }
        r.n_local = node.size();
    }
    r.slots = share_slots(node);
    g_prepared.store(true);
}

void disarm_failure_report() {
    g_armed.store(false);
    set_my_slot(kSlotIdle);
}

void report_own_failure() {
    g_armed.store(false);
    set_my_slot(kSlotFailed);
}

// ---- progress watchdog ---------------------------------------------------------------
namespace {
struct Watchdog {
    std::mutex mu;
    std::condition_variable cv;
    std::thread thread;
    bool running = false, paused = false;
    double timeout_s = 0;          // <= 0: auto
    double slowest_step_s = 0;
    int64_t last_step = 0;
    std::chrono::steady_clock::time_point last;
};
Watchdog g_watchdog;

double watchdog_limit(const Watchdog& w) {
    if (w.timeout_s > 0) return w.timeout_s;
    if (w.last_step <= 0) return 1800.0;
    return std::max(300.0, 20.0 * w.slowest_step_s);
}

void watchdog_loop() {
    Watchdog& w = g_watchdog;
    std::unique_lock<std::mutex> lk(w.mu);
    while (w.running) {
        w.cv.wait_for(lk, std::chrono::milliseconds(500));
        if (!w.running || w.paused) continue;
        const double idle = std::chrono::duration<double>(std::chrono::steady_clock::now() - w.last).count();
        const double limit = watchdog_limit(w);
        if (idle < limit) continue;
        bool expected = false;
        if (!g_reporting.compare_exchange_strong(expected, true)) ::_exit(1);
        SafeOut& o = g_out;
        o.s(g_report.prefix.empty() ? "curaclip: " : g_report.prefix.c_str());
        o.s("rank "); o.i(g_report.my_world_rank); o.s(": no progress for "); o.i(long(idle));
        o.s(" s after step "); o.i(long(w.last_step));
        o.s(" (limit "); o.i(long(limit));
        o.s(" s, train.step_timeout): a rank has stopped or hangs (a stopped process, a hung file system, device or "
            "network); ending this rank so that the launcher ends the job\n");
        append_checkpoint_lines(o);
        o.flush();
        ::_exit(1);
    }
}
}  // namespace

void start_progress_watchdog(double timeout_s) {
    Watchdog& w = g_watchdog;
    std::lock_guard<std::mutex> lk(w.mu);
    if (w.running) return;
    w.running = true;
    w.paused = false;
    w.timeout_s = timeout_s;
    w.slowest_step_s = 0;
    w.last_step = 0;
    w.last = std::chrono::steady_clock::now();
    w.thread = std::thread(watchdog_loop);
}

void note_progress(int64_t step, double step_seconds) {
    Watchdog& w = g_watchdog;
    std::lock_guard<std::mutex> lk(w.mu);
    w.last_step = step;
    w.slowest_step_s = std::max(w.slowest_step_s, step_seconds);
    w.last = std::chrono::steady_clock::now();
}

void pause_progress_watchdog(bool paused) {
    Watchdog& w = g_watchdog;
    std::lock_guard<std::mutex> lk(w.mu);
    w.paused = paused;
    w.last = std::chrono::steady_clock::now();
}

void stop_progress_watchdog() {
    Watchdog& w = g_watchdog;
    {
        std::lock_guard<std::mutex> lk(w.mu);
        if (!w.running) return;
        w.running = false;
    }
    w.cv.notify_all();
    w.thread.join();
}

}  // namespace curaclip
